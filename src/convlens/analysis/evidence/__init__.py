"""Statistics and verdicts: running statistics and intervals, verdict rules, the kernel controls, across-seeds summaries."""

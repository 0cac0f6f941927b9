"""Orchestration: the stages shared by every analysis (:mod:`.stages`), the run path
(:mod:`.run_path`, ``analyze_run``) and the model-file path (:mod:`.model_file`,
``analyze_model_file``)."""

"""The pieces of the ``convlens`` command (:mod:`convlens.cli`): the error contract, the option
declarations and the smaller commands."""

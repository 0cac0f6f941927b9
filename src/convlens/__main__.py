"""``python -m convlens`` (as used by ``torchrun -m convlens ...``): the ``convlens`` command."""

from convlens.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()

"""`python -m modal_gpu_action`: the entry the composite action runs (GitHub mode)."""

from modal_gpu_action.cli import main

raise SystemExit(main())

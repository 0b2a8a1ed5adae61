"""`python -m modal_gpu_action.container --request R.json --result R.json`: one pytest run (run.py)."""

from .run import main

raise SystemExit(main())

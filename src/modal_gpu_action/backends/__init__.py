"""Where the suite runs: `local` (this machine) or `modal` (a Modal GPU container)."""

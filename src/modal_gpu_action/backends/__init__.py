"""Stage 3 of inputs -> settings -> backend -> container -> report -> render -> publish: where
the suite runs: `local` (this machine) or `modal` (a Modal GPU container).

Each backend takes Settings, hands the container package its RunRequests and returns a
BackendResult. `project_files` lists the project folder that the Modal backend uploads.
"""

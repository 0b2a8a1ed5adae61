"""Stages 1 and 2 of inputs -> settings -> backend -> container -> report -> render -> publish:
the action's inputs (`inputs`) and the settings made of them.

Every input of the action, read from command-line flags or GitHub's `INPUT_*` variables (and in
GitHub mode GitHub's event), validated once, before anything runs or reaches the network. A bad
value is a `SettingsError` whose one-line message names the input, what was given and what is
accepted; the CLI turns it into exit code 2.

One module a concern:
- `inputs`: the list of inputs (`INPUTS`) and their raw text;
- `values`: `SettingsError` and the checks several inputs share (choices, numbers, paths);
- `run`: `Settings`, what runs and where, and `load_settings`;
- `modal_credentials`: the Modal token from the inputs, the environment or the Modal profile;
- `image` and `dependencies`: the Modal image's inputs and the project's dependency files;
- `publishing` and `github_event`: the PR comment, the label and GitHub's event;
- `gpu`: the `gpu` input's specs: Modal's GPU types, counts and prices.
"""

from modal_gpu_action.settings.dependencies import DependencyFiles, DependencySource
from modal_gpu_action.settings.github_event import GitHubContext
from modal_gpu_action.settings.image import ImageSettings
from modal_gpu_action.settings.inputs import INPUT_NAMES, INPUTS, InputSpec, env_name, raw_inputs
from modal_gpu_action.settings.publishing import (
    LabelSettings,
    PublishSettings,
    load_label_settings,
)
from modal_gpu_action.settings.run import Settings, load_settings
from modal_gpu_action.settings.values import SettingsError, output_path, shown

__all__ = [
    "INPUTS",
    "INPUT_NAMES",
    "DependencyFiles",
    "DependencySource",
    "GitHubContext",
    "ImageSettings",
    "InputSpec",
    "LabelSettings",
    "PublishSettings",
    "Settings",
    "SettingsError",
    "env_name",
    "load_label_settings",
    "load_settings",
    "output_path",
    "raw_inputs",
    "shown",
]

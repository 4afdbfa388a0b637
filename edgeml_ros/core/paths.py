"""Where the package keeps its committed models, profiles and policies.

Nothing heavy is imported here, so that launch files and light nodes can find them.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = PACKAGE_DIR / "checkpoints"
PROFILE_DIR = PACKAGE_DIR / "profiles"
POLICY_DIR = PACKAGE_DIR / "policies"


def shown_path(path: Path | str) -> str:
    """`path` relative to the working directory where it lies below it, for pages and logs."""
    resolved, here = Path(path).resolve(), Path.cwd().resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(path)

"""Where the package keeps its committed models, profiles and policies.

Nothing heavy is imported here, so that launch files and light nodes can find them.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CHECKPOINT_DIR = PACKAGE_DIR / "checkpoints"
PROFILE_DIR = PACKAGE_DIR / "profiles"
POLICY_DIR = PACKAGE_DIR / "policies"

"""`python -m edgeml_ros.cli`: the `edgeml` command."""

import sys

from edgeml_ros.cli import main

sys.exit(main())

"""`python -m agentstore`: the same as the `agentstore` command."""

import sys

from agentstore.client.cli import main

sys.exit(main())

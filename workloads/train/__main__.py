"""``python -m codekiln.workloads.train --config FILE`` (the in-pod entry, launched by torchrun)."""

import sys

from codekiln.workloads.train.runner import main

sys.exit(main())

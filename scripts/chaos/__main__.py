import sys

from scripts.chaos.run import main

sys.exit(main())

import sys

from seg3d.cli import main

sys.exit(main())

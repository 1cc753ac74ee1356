import sys

from fetalhc.cli.main import main

sys.exit(main())

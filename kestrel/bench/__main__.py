import sys

from kestrel.bench.cli import main

sys.exit(main())

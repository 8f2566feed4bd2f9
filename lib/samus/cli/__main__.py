"""`python -m samus.cli ...`"""
import sys

from . import main

sys.exit(main())

import sys

from .cli import main

sys.exit(main())  # the ordinary exit here (profilers run the module); the command exits fast (cli.console_main)

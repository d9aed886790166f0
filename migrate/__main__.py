"""Allow ``python -m migrate`` as well as the ``billmig`` console script."""

from migrate.cli.main import main

raise SystemExit(main())

"""`python -m app.cli`: the `lbp` command."""
from app.cli import main

raise SystemExit(main())

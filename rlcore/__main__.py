"""``python -m rlcore ...``: the ``rlcore`` command (:func:`rlcore.cli.main`)."""

from rlcore.cli import main

raise SystemExit(main())

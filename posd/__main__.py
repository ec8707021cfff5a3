from posd.cli import main

raise SystemExit(main())

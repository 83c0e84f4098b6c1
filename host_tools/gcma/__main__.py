from gcma.cli import main

raise SystemExit(main())

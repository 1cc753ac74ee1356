from fetalhc.cli.main import main

raise SystemExit(main())

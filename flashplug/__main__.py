from flashplug.cli import main

raise SystemExit(main())

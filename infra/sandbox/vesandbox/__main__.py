from vesandbox.launcher import main

raise SystemExit(main())

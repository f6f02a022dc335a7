from serve.label.cli import main

raise SystemExit(main())

from medulla_imaging_exporter.cli import main

raise SystemExit(main())

from kaudit_elk.cli.main import main

main()

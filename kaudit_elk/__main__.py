from kaudit_elk.cli import main

main()

from pk.cli.main import main

main()

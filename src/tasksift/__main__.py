from tasksift.cli.app import main

main()

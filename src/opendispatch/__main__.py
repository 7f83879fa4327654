from opendispatch.cli import main

main()

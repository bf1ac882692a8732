from twostream.cli import main

main()

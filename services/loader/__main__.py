from services.loader.app import main

main()

from services.transformer.app import main

main()

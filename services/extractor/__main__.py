from services.extractor.app import main

main()

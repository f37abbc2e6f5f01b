"""`python -m services.analysis`: run the AnalysisService server."""
from services.analysis.server import main

if __name__ == "__main__":
    main()

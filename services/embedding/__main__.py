import sys

from services.embedding.server import main

sys.exit(main())

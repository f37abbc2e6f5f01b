"""`python -m services.probing`: run the probing gRPC server."""
from services.probing.server import main

main()

# Lets `pytest bindings/python/tests` import the package from this checkout.
import os
import sys

sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(__file__), "..")))

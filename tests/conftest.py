"""Test-wide setup: the strategies module sits beside the tests, and hypothesis has
a quick default profile and a thorough one (HYPOTHESIS_PROFILE=thorough)."""

import os
import sys

from hypothesis import settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile("default", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=3000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

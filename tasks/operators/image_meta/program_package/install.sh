#!/bin/sh
# Dependencies of this operator (the ModelArts base image already has Pillow).
python -m pip install --quiet "pillow>=9"

"""``python -m upscale.cli``: the same as the ``upscale`` command."""

from upscale.cli import main

main()

"""The tdtp code location's composition root: ``tdtp_location.definitions`` holds ``defs``.

It sits above the packages it assembles, so they never import it nor each other
upwards: ``tdtp_location`` -> {``tdtp_assets``, ``sensors``} -> ``resources`` ->
``tdtp`` (``sensors`` also reads ``tdtp_assets``' names and jobs; ``tdtp_assets``
never imports ``sensors``).  ``workspace.yaml`` loads ``tdtp_location.definitions``.
"""

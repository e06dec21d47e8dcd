"""The static report page (``page``) and its plots (``plots``)."""

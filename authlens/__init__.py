"""authlens: the command line that joins the training and serving halves (``authlens --help``)."""

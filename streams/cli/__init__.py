"""`reco`: the command line and the commands that are more than a call into the worker or the app."""

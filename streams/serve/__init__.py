"""`reco serve`: the faust-streaming app for serving and control."""

"""Drag to video: draw trajectories on an image, get a video (Streamlit app, headless CLI, ObjMC evaluation)."""

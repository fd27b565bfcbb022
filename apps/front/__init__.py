"""The front door: one server with the landing page (`landing`) and both Gradio apps mounted under their paths,
the Streamlit drag app linked (`server`). It imports the apps; the apps import no other app."""

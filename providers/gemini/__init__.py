"""Google's Gemini API, on generativelanguage and Vertex AI."""

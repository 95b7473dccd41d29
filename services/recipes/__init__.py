"""Recipes that train the tiny models on ShapesWorld: they import the world *and* the model classes of the
services (which the world itself must not), and nothing imports them. The verifier's recipe lives in
``shapesworld.verifier_recipe`` because it deliberately rebuilds the service's inputs without importing it."""

"""Insertion (Petsiuk, Das and Saenko, BMVC 2018), deletion's mirror: start from the
blurred image and reveal the map's cells from the most relevant down; the area under
the explained class's score curve is higher when the first cells revealed carry the
evidence. Higher is better."""

from harness.measures.deletion import curve_measure

MEASURE = curve_measure("insertion", True,
                        "Does revealing the cells the map ranks first bring the score back "
                        "fastest? Area under the score curve as cells of the blurred image are "
                        "restored, most relevant first.")

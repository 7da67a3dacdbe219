# The web explorer (eventrocks ui, doc/ui.md).
#   make test-browser     headless Chromium loads its pages (spec/browser/;
#                         needs tools/deps.sh browser)
#   make ui-screenshots   doc/ui-*.png, from the examples' store
.PHONY: test-browser ui-screenshots

test-browser: all
	$(BUSTED) --lua=$(LUA) --cpath='$(B)/?.so' --pattern=ui_chromium spec/browser

ui-screenshots: all
	B=$(B) tools/ui_screenshots.sh

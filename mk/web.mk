# The built-in web page (issue 5). daemon/web.c pulls web/index.html in with the
# assembler's .incbin, which the compiler's -MMD dependency file cannot see: say it here
# so that editing the page rebuilds the daemon.
$(BUILD)/daemon/web.o: web/index.html
